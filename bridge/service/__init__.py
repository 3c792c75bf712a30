"""The service layer: ``LlmConfigService`` (cache, rules, events, concurrency). No sockets."""

from bridge.service.channels import register_llm_config_channels
from bridge.service.events import EventBus
from bridge.service.llm_config import CacheInfo, LlmConfigService, to_view
from bridge.state import utc_now

__all__ = [
    "CacheInfo",
    "EventBus",
    "LlmConfigService",
    "register_llm_config_channels",
    "to_view",
    "utc_now",
]
