"""Reverse ETL: warehouse rows synced to operational tools, sending only what changed (no Airflow imports).

* :mod:`.diff`: the sync's state in the warehouse (a hash per key of what was last *delivered*) and
  the changes (create / update / delete) computed against it in SQL, streamed in batches.
* :mod:`.destinations`: one small interface (:class:`~.destinations.base.Destination`) and the
  destinations behind it (generic HTTP, PostgreSQL, HubSpot, Mailchimp).
* :mod:`.delivery`: batches sent with retries on 429 / 5xx / timeouts (exponential backoff that
  honours ``Retry-After``) under the destination's rate limit.
* :mod:`.sync`: one run: diff → batches → delivery → acknowledged keys recorded, rejections stored.
"""
