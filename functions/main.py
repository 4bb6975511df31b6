"""Entry points for functions-framework and Cloud Functions: one per registered
function, named as the function (`--target=tasks_new`)."""

from functions.endpoints import FUNCTIONS
from functions.http import entry_point

# Generated from the registry so that the list of deployed functions cannot
# drift from it.
for _function in FUNCTIONS:
    globals()[_function.name] = entry_point(_function)
