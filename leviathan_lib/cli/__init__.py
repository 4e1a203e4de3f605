"""The ``leviathan`` command: one module per command group, each exposing ``register(subparsers)``.

User errors exit 2 with one line per problem, never a traceback. May import: ``control`` (for anything
that reads or changes Airflow state), ``cycle``, ``forge``, ``worker`` (the recipes parser, to check
recipes files), ``deploy``, ``evidence``, ``core``; never the Airflow ORM directly. ``cli.main`` loads the
``demo`` command group by module name, like every other group.
"""
