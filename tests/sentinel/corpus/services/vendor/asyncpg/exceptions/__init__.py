"""asyncpg's exception classes, as the server's SQLSTATE maps to them."""


class PostgresError(Exception):
    sqlstate = ""


class InvalidAuthorizationSpecificationError(PostgresError):
    sqlstate = "28000"


class InvalidPasswordError(InvalidAuthorizationSpecificationError):
    sqlstate = "28P01"


class InterfaceError(Exception):
    pass


class ConnectionDoesNotExistError(InterfaceError):
    pass


BY_SQLSTATE = {"28P01": InvalidPasswordError, "28000": InvalidAuthorizationSpecificationError}
