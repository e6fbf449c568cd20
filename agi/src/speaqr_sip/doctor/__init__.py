"""speaqr-doctor: walks the service description's troubleshooting list on the appliance and
prints one diagnosis per point (TLS listener and certificate, the account, its media settings,
the RTP ports, the ARI application, FastAGI, the database, Speaqr, the carrier).

``checks`` judges what ``probes`` observed (pure logic, unit-tested); ``probes`` runs the
commands and connections on the appliance; ``asterisk_cli`` reads Asterisk's CLI output."""
