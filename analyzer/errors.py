"""The one base class for errors a user should read.

Every layer raises its own subclass (a bad config, a refused spool, a gdb
that is missing, an unknown crash id); the CLI catches ``CoretriageError``
once and prints its message as one line. The message names the thing and,
where there is one, the fix. It lives here, in the library every other
package may import, so the collector and the analyzer need nothing above
them to use it.
"""

from __future__ import annotations


class CoretriageError(Exception):
    """An error whose message is written for the user: one line, no traceback."""
