"""schemathesis against a real server, from the OpenAPI document: generated requests
(bounded examples per operation, valid and invalid ones) never get a 5xx, every
answer (its status, content type and body) is one the document describes, and
invalid requests are refused.

The document is the one the code builds (``tests/e2e/test_openapi.py`` checks that the
server serves exactly it), so the operations are known when pytest collects. The
server runs with an API key (sent with every generated request, so the calls reach
their handlers) on the embedded default engine (SQLite), as a user runs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from orbiter.http.openapi import openapi_document
from tests.support.server import RunningServer

API_KEY = "schemathesis-key"
#: Generated examples per operation and mode: enough to reach the handlers' checks,
#: few enough for the suite.
EXAMPLES = 40

#: An invalid request may be refused with any 4xx naming the problem (413 for a batch past
#: its limit, say), not only with the statuses schemathesis expects by default.
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": ["4XX"]}}}
)
SCHEMA = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)
OPERATIONS = {
    op.label: op
    for op in (result.ok() for result in SCHEMA.get_all_operations())  # type: ignore[union-attr]
}
#: Operations with input (parameters or a body): only these have invalid requests to make.
WITH_INPUT = sorted(
    label
    for label, op in OPERATIONS.items()
    if op.definition.raw.get("parameters") or op.definition.raw.get("requestBody")
)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = RunningServer(f'[server]\napi_key = "{API_KEY}"\n')
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("label", "mode"),
    [(label, GenerationMode.POSITIVE) for label in sorted(OPERATIONS)]
    + [(label, GenerationMode.NEGATIVE) for label in WITH_INPUT],
)
def test_operation_answers_as_described(
    label: str, mode: GenerationMode, server: RunningServer
) -> None:
    operation = OPERATIONS[label]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(
            base_url=server.url,
            headers={"X-API-Key": API_KEY},
            timeout=30,
            # The API has rules across fields that the schemas do not spell out (since
            # needs epoch, not with before; one of user, key, channel; keys parse as
            # Orbited keys; reserved tag names): a request valid by the schema may be
            # refused with a 400 naming the rule. Everything else is checked.
            excluded_checks=[positive_data_acceptance],
        )

    run()
