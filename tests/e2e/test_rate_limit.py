from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from conftest import Databases, make_client, start_server
from fake_upstream import FakeUpstream
from server import KEYS, AssistdServer


@pytest.fixture
def limited(
    tmp_path_factory: pytest.TempPathFactory, databases: Databases, fake: FakeUpstream
) -> Iterator[AssistdServer]:
    srv = start_server(tmp_path_factory, databases, fake, rate_limit_per_minute="60", rate_limit_burst="3")
    yield srv
    srv.stop()


def test_rate_limit_answers_429_with_retry_after_per_tenant(limited: AssistdServer) -> None:
    with make_client(limited, KEYS[0]) as alpha, make_client(limited, KEYS[1]) as beta:
        for _ in range(3):
            alpha.beta.assistants.list()
        with pytest.raises(openai.RateLimitError) as refused:
            alpha.beta.assistants.list()
        response = refused.value.response
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        assert response.json() == {
            "error": {
                "message": "Rate limit reached for requests: 60 per minute. Try again in 1s.",
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        # Another key is another tenant with its own budget.
        assert beta.beta.assistants.list().data == []
