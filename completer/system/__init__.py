"""How completer's processes use the machine: BLAS threads (`blas`), the scheduler slice of the
serving threads (`sched`) and returning freed memory to the system (`heap`)."""
