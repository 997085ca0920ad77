"""Drop-in webhook verification for web frameworks.

Each framework has its own module, importable only when that framework is
installed (``pip install 'upvest-verify[starlette]'``, ``[fastapi]``, ``[flask]``,
``[django]``):

- :mod:`upvest_verify.adapters.starlette`: ``UpvestWebhookMiddleware`` (pure ASGI).
- :mod:`upvest_verify.adapters.fastapi`: the middleware plus ``UpvestWebhook``, a
  dependency returning the verified webhook, and ``UpvestSignature``, a
  stand-alone dependency.
- :mod:`upvest_verify.adapters.flask`: the ``UpvestVerify`` extension and the
  ``@require_upvest_signature`` decorator.
- :mod:`upvest_verify.adapters.django`: ``UpvestWebhookMiddleware``, the
  ``@require_upvest_signature`` decorator and system checks, configured by
  ``settings.UPVEST_VERIFY``.

Given an event ledger (``ledger=``, ``UPVEST_VERIFY_LEDGER``, ``UPVEST_VERIFY["LEDGER"]``),
every adapter processes each event once: the view gets a ``Delivery`` of the events
still to process (``get_delivery``), a retried delivery whose events are all done is
answered 200 ``already_processed``, and the claims the view leaves open are completed
by a 2xx answer and released by any other.

This package imports nothing, so importing it never pulls in a framework.
"""
