"""One module per subcommand: `add_parser(sub)` defines its flags, `run(args)` does the work."""
