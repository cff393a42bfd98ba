"""The LLM client's failure paths against a closed port (what every backend shares is in tests/contracts)."""

from __future__ import annotations

import pytest

from ragsweep.pipelines.llm_client.client import ChatRequest, LLMClient, LLMError, check_endpoint
from tests.integration.local_cluster import free_port

pytestmark = pytest.mark.integration


def test_unreachable_endpoint_error_names_it() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LLMError, match=f"{url} unreachable"):
        LLMClient(url, "m", max_retries=1, timeout_s=5).complete([ChatRequest((("user", "hi"),))])
    with pytest.raises(LLMError, match=f"{url}/models is not usable"):
        check_endpoint(url)
