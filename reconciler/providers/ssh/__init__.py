"""SSH delivery: reaching a host over SSH (asyncssh) for the targets that say ``via: NAME``.

``config.py`` is the ``ssh`` provider entry and its local checks (key file
modes, known_hosts present); ``loop.py`` the one background event loop asyncssh
runs in; ``connection.py`` one connection per host per run with a small
synchronous facade (SFTP writes, reads, commands, the batched stat);
``hostkeys.py`` strict host-key checking and ``ssh-keyscan``; ``statscript.py``
the one remote command that stamps many files; ``host.py`` the ``Host`` a
target uses, over that connection (``providers/hosts.py`` has the local one).
"""
