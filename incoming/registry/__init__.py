"""
Where the state of uploads lives, so that a restarted server carries on
where it stopped.
"""

from zope.interface import Interface


class IRegistry(Interface):
    """
    Upload records (plain JSON-able dicts, see L{incoming.upload.Upload}),
    keyed by upload id.
    """

    def save(record, durable):
        """
        Store C{record}, replacing any earlier version atomically: a reader
        (or a restarted server) sees the old record or the new one, never a
        mix. With C{durable}, the record also survives a power loss.

        @return: a L{Deferred} that fires once the record is stored.
        """

    def save_later(record):
        """
        Store C{record} as L{save} does, not durable, a moment later: for a
        change that a restarted server can do without (an upload's offset,
        which its data file has too). Saves close together go as one.
        L{flushed} has it stored at once.
        """

    def flushed(upload_id):
        """
        A L{Deferred} that fires once every save and removal of
        C{upload_id} asked for so far is carried out (or has failed), so
        that what is read of the upload next is what a restart would find.
        """

    def load_all():
        """
        Every stored record, for the start of the server. Records that cannot
        be read are skipped and reported in the log.

        @return: a L{Deferred} firing with a list of dicts.
        """

    def remove(upload_id):
        """
        Forget the record of C{upload_id}.

        @return: a L{Deferred} that fires once it is gone.
        """

    def upload_ids():
        """
        The ids of all stored records, for the sweeper.
        """
