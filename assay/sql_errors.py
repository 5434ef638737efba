"""The error of SQL that cannot be read, shared by the SQL loader (sql.py) and its AUTO CDC
statements (sql_cdc.py), so that neither imports the other for it."""


class SqlSyntaxError(ValueError):
    """SQL that cannot be read; `line` is 1-based within the text that was read."""

    def __init__(self, message: str, line: int = 1):
        super().__init__(message)
        self.line = line
