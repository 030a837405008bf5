"""Tenant, account and instance payloads: validation, normalisation, wire form (reference §5.4–§5.6).

Every ``validate_*`` function takes the decoded JSON body and returns a plain dict ready
for the store, or raises :class:`~mailproxyd.errors.ValidationFailed` listing **every**
problem found, with the reference's field paths and messages (``port: must be an integer
between 1 and 65535``, ``client_auth.token: required``, ``<field>: unknown field``).

* ``validate_account`` / ``validate_tenant``: full definitions (``POST``), defaults filled in.
* ``validate_*_update``: partial changes (``PUT``); an absent key is left out, a ``null``
  value is kept as ``None`` and means "back to the default" to the store. When the stored
  object is passed as ``current`` the rules that depend on it (``use_tls`` derivation,
  ``bearer`` needs a token, bounce needs host/user/password) are judged on the merged result.
* ``present_account`` / ``present_tenant`` / ``present_instance``: the stored object in its
  wire form, defaults applied, derived fields added, secrets replaced by ``*_set`` flags and
  ``null`` values omitted (reference §0).

The rules live in :mod:`~mailproxyd.core.models.account`, :mod:`~mailproxyd.core.models.tenant`
and :mod:`~mailproxyd.core.models.instance`; this module is the one name callers import.

Read-only keys of a response (``created_at``, ``password_set``, ``suspended_batches``, …)
are ignored in requests, so a ``GET`` body can be sent back unchanged.
"""
