"""The `conrec` command line, thin over the application layer: `main.py` holds the one `conrec`
command, each other module one subcommand's options and the call into the package that does the
work, `options.py` the options made from config dataclasses. Nothing outside this package imports
it."""
