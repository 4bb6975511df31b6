"""Entry points for functions-framework and Cloud Functions: one per registered
function, named as the function (`--target=tasks_new`).

In a deployed function (Cloud Run's `K_SERVICE` is set), importing this module
checks the settings first, so that a missing or malformed one fails the
deploy, naming it, and switches logging to Cloud Logging's JSON lines.
"""

from functions import logs, settings
from functions.endpoints import FUNCTIONS
from functions.http import entry_point

if settings.deployed():
    settings.check_deployed()
    logs.use_json()

# Generated from the registry so that the list of deployed functions cannot
# drift from it.
for _function in FUNCTIONS:
    globals()[_function.name] = entry_point(_function)
