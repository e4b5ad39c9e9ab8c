"""CLI verbs beyond the core ones, one module per stage; each module lists its click commands in COMMANDS.

`radar.cli` adds every module found here, so a new stage adds a file and touches nothing else. Keep
module-level imports light: import heavy libraries inside the command functions.
"""
