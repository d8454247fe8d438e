"""
Where the bytes of uploads go.

The receiver calls an L{IStoredFile} from a worker thread, one call at a
time per file, so implementations may block; nothing of theirs runs on the
reactor thread on the upload hot path.
"""

from zope.interface import Attribute, Interface


class IStorage(Interface):
    """
    A place that holds the data of uploads, one object per upload id.
    """

    def open(upload_id):
        """
        Open the data of C{upload_id} for appending, creating it empty if it
        does not exist yet. Blocking.

        @rtype: L{IStoredFile}
        """

    def open_at(upload_id, offset):
        """
        The data of C{upload_id} for appending at C{offset}: bytes past it
        (left by a chunk that was never confirmed) are dropped. Does not
        block: the file is opened by the first call on it, which comes from
        a worker thread.

        @rtype: L{IStoredFile}
        """

    def size(upload_id):
        """
        The number of bytes stored for C{upload_id}, 0 if none. Blocking.
        """

    def location(upload_id):
        """
        What the backend is told in the handover: for a local directory, the
        absolute path of the file.
        """

    def remove(upload_id):
        """
        Delete the data of C{upload_id} if it is there. Blocking.
        """

    def upload_ids():
        """
        The ids of all uploads that have data stored, for the sweeper.
        """

    def concatenate(upload_id, part_ids):
        """
        Make the data of C{upload_id} the data of C{part_ids}, one after the
        other (tus concatenation), without passing the bytes through Python
        where the storage can avoid it. The parts stay. Blocking.
        """


class IStoredFile(Interface):
    """
    The data of one upload, open for appending. Every method blocks.
    """

    size = Attribute("The number of bytes in the file.")

    def append(buffers):
        """
        Append the byte strings C{buffers} in order.

        @raise OSError: with C{errno.ENOSPC} when the storage is full; the
            file then holds exactly what it held before the call.
        """

    def truncate(size):
        """
        Cut the file back to C{size} bytes (a rejected chunk is dropped).
        """

    def sync():
        """
        Make the data written so far durable.
        """

    def read(chunk_size):
        """
        Iterate over the file's contents in pieces of C{chunk_size} bytes.
        """

    def close():
        """
        Release the file. Never blocks: what is left to write out may go
        on in the background (L{sync} is what makes data durable).
        """
