from conrec.cli.main import app

app()
