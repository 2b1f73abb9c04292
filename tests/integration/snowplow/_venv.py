"""A separate virtualenv holding ``snowplow-analytics-sdk``, the third-party reader we cross-check against.

Kept in the component-environment cache (:mod:`airflow_osds.venvs`: ``$OSDS_VENV_CACHE/snowplow-sdk-0.2.3``).
The SDK is installed with ``--no-deps``: its only requirement, boto3, serves the DynamoDB
run-manifest module, which the cross-check never imports. It is kept out of our own environment on
purpose (2017 code, and nothing of ours may come to depend on it). Runnable as a script to pre-build
it: ``python tests/integration/snowplow/_venv.py``.
"""

from __future__ import annotations

from pathlib import Path

from airflow_osds.venvs import ensure_venv

REQUIREMENTS = ("snowplow-analytics-sdk==0.2.3",)
NAME = "snowplow-sdk-0.2.3"


def ensure_sdk_venv() -> Path:
    """Return the ``python`` of the SDK's virtualenv, creating the virtualenv if needed.

    :raises airflow_osds.venvs.VenvError: the virtualenv could not be created (the caller's test must fail).
    """
    root = ensure_venv(NAME, REQUIREMENTS, pip_args=["--no-deps"],
                       check=["-c", "import snowplow_analytics_sdk.event_transformer"])
    return root / "bin" / "python"


if __name__ == "__main__":
    print(ensure_sdk_venv())
