"""The files that go onto a host (sysctl, systemd units, the handler wrapper).

Installed as the package ``collector.hostsetup.files`` (see pyproject.toml);
``collector.hostsetup.render`` reads them with importlib.resources.
"""
