from conrec.cli import app

app()
