"""speaqr-sip appliance code: AGI checks, the ARI application `loopback`, media and processors.

Nothing is imported here on purpose: the plain AGI script is started once per call and
must not pay for numpy/aiohttp imports it does not use.
"""

__version__ = "0.1.0"
