"""The dispatch cycle of a sender process: claim, admit, build, send, record.

* :mod:`.cycle` — the sender's main loop and one dispatch cycle over every ready account;
* :mod:`.account` — serving one account: session slots, claims, admission, parallel sends;
* :mod:`.attempt` — one SMTP attempt of one admitted message, classified;
* :mod:`.claims` — the store transactions the cycle composes (claim, admit, release, renew);
* :mod:`.record` — fenced recording of outcomes in grouped transactions;
* :mod:`.smtp` — the seam to the SMTP driver (pool, cancellable attempts);
* :mod:`.env` — what every part of one sender's cycle shares (stop logic, kicks, the writer).
"""
