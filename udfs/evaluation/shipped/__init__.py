"""The code that runs inside the sandbox with the code under test: real modules, shipped as text.

Nothing here is imported by the evaluation itself: udfs/evaluation/programs.py reads these
files (importlib.resources) and builds each program as the code under test, then the
texts of the parts it needs in order, in one namespace, then one call of the entry point
with its arguments written as literals:

- ground truth: calls.py, ground_truth.py, `_sa_ground_truth(...)`
- check:        calls.py, compare.py, check.py, `_sa_check(...)`

So each module: imports the standard library only; never `from __future__` (a program
cannot have one in its middle); names everything _sa_ (the code under test neither sees
nor shadows the harness's names by accident); keeps what runs per program cheap; and
takes the names of an earlier part from the shared namespace, importing them only for the
type checker (`if TYPE_CHECKING:`, with TYPE_CHECKING = False as typing has it at run
time). Their pure functions are unit-tested by importing them (tests/unit).
"""
