"""Who a bot says it is on every call, and the bot registry."""

import dataclasses
import datetime
from typing import Any

from functions.errors import BadRequest
from functions.store import Store
from shared import dimensions as dims_lib
from shared.errors import ValidationError


@dataclasses.dataclass(frozen=True)
class BotRequest:
    """The fields every bot API call carries (PROTOCOL.md, Bot API)."""

    bot_id: str
    dimensions: dims_lib.Dimensions
    state: dict[str, Any]
    version: str

    @classmethod
    def from_body(cls, body: dict[str, Any], enforced: dict[str, dims_lib.Dimensions]) -> "BotRequest":
        """Reads the bot's fields; the dimensions the server enforces for that
        bot id (`enforced`) replace what it reports for those keys."""
        dims = dims_lib.validate_bot(body.get("dimensions"), "dimensions")
        ids = dims.get("id", [])
        if len(ids) != 1:
            raise ValidationError("dimensions.id", "a bot must report exactly one id")
        state = body.get("state", {})
        if not isinstance(state, dict):
            raise ValidationError("state", "must be a JSON object")
        version = body.get("version", "")
        if not isinstance(version, str):
            raise ValidationError("version", "must be a string")
        dims = {**dims, **enforced.get(ids[0], {})}
        return cls(bot_id=ids[0], dimensions=dims_lib.validate_bot(dims, "dimensions"), state=state,
                   version=version)

    @property
    def flat(self) -> frozenset[str]:
        return dims_lib.flatten(self.dimensions)


def handshake(store: Store, bot: BotRequest, enforced: dims_lib.Dimensions, server_version: str,
              now: datetime.datetime) -> dict[str, Any]:
    if "pool" not in bot.dimensions:
        raise BadRequest("dimensions.pool: a bot must report at least one pool")
    store.register_bot(
        bot.bot_id,
        {
            "dimensions": dims_lib.to_pairs(bot.dimensions),
            "dimensions_flat": sorted(bot.flat),
            "state": bot.state,
            "version": bot.version,
        },
        now,
    )
    return {
        "bot_version": bot.version,
        "server_version": server_version,
        "bot_group_cfg": {"dimensions": enforced},
    }
