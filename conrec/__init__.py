"""CoNRec negative-feedback filter: the `conrec` command line ties the parts together."""
