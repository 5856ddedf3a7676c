"""Dispatch: the composition that moves tasks from a queue onto workers, and its failure sink.

:class:`DeadLetterQueue` holds the tasks that left the normal path, with
their reason and history, until they are inspected, redriven or purged.
"""

from taskdist.dispatch.dead_letter import (
    DeadLetter,
    DeadLetterQueue,
    DeadLetterStats,
    RedriveReport,
)

__all__ = ["DeadLetter", "DeadLetterQueue", "DeadLetterStats", "RedriveReport"]
