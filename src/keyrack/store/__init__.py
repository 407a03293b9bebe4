"""Storage: SQLAlchemy tables, repository, unit of work, migrations, engine specifics."""
