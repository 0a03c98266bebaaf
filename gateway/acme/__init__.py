"""Automatic HTTPS: certificates from an ACME CA (RFC 8555), obtained and renewed by asgigw.

- ``storage.py``: the account key and certificates on disk (one folder per CA), and the
  lock that keeps two processes from talking to the CA at once.
- ``challenges.py``: the answers the CA checks (http-01 tokens, tls-alpn-01 certificates),
  kept as files, so that every worker process can serve them; and the ClientHello reader
  that tells an ``acme-tls/1`` validation from a normal TLS client.
- ``issuer.py``: the protocol (account, order, authorizations, finalize, download) with the
  ``acme``/``josepy`` packages (the ``acme`` extra), blocking, run in a thread.
- ``manager.py``: the life cycle: serve a stored certificate (or a placeholder) at once,
  obtain or renew in the background, hand new files to the certificate reload path.

Nothing here is imported unless ``--acme-domain`` is given.
"""
