"""
Pacing of bursts: work that arrives all at once is started a few pieces per
turn of the reactor, so that what else is waiting for the reactor thread
between those turns is not held up behind all of it.
"""

from collections import deque


class TurnPacer:
    """
    Runs at most C{per_turn} of the calls given to L{start} in each turn of
    the reactor; the others wait, first come first served, for the turns
    after. A turn is one pass of the reactor's loop: its timed calls, then
    one poll and the events it returned.
    """

    def __init__(self, reactor, per_turn):
        self._reactor = reactor
        self.per_turn = per_turn
        self._started = 0
        self._waiting = deque()
        self._scheduled = False

    @property
    def waiting(self):
        return len(self._waiting)

    def start(self, call):
        """
        Call C{call} now if this turn has room for it, else in a later turn.
        """
        # The next turn resets the count, or starts the calls left waiting.
        self._schedule_new_turn()
        if self._started < self.per_turn and not self._waiting:
            self._started += 1
            call()
        else:
            self._waiting.append(call)

    def _schedule_new_turn(self):
        # A call due now runs at the start of the reactor's next pass,
        # before its next poll: the turn boundary.
        if not self._scheduled:
            self._scheduled = True
            self._reactor.callLater(0, self._new_turn)

    def _new_turn(self):
        self._scheduled = False
        self._started = 0
        if self._waiting:
            # Scheduled first: a call that raises must not strand the rest.
            self._schedule_new_turn()
        while self._waiting and self._started < self.per_turn:
            self._started += 1
            self._waiting.popleft()()
