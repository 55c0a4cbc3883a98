"""The ``symbolicate`` client: reads stacks people have (requests, module/offset lines, crash
reports, Firefox profiles), asks a SymServer, prints readable stacks.

A client of the public API only, kept apart from the servers: it imports nothing from them.
"""
