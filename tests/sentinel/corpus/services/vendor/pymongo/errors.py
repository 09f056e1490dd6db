"""pymongo's exceptions."""


class PyMongoError(Exception):
    pass


class ConnectionFailure(PyMongoError):
    pass


class AutoReconnect(ConnectionFailure):
    pass


class ServerSelectionTimeoutError(AutoReconnect):
    pass
