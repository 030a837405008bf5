"""mail-proxy: a durable, multi-tenant e-mail dispatch proxy.

Applications hand messages over HTTP; worker processes deliver them through
each tenant's SMTP accounts and report every delivery event back.
"""

__version__ = "1.0.0"
