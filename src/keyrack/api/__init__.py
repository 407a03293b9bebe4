"""HTTP: the app factory, schemas, the error table, the lean verify path."""
