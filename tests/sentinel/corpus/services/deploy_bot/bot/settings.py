"""The bot's settings, from its environment."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field


class Settings(BaseModel):
    exchange_api_key: str = Field(validation_alias="EXCHANGE_API_KEY")
    markets: list[str] = ["ETH-PERP", "BTC-PERP", "SOL-PERP", "ARB-PERP"]


def load() -> Settings:
    return Settings.model_validate(dict(os.environ))
