"""Stand-in for pymongo: ``MongoClient(...)[db][collection].insert_one`` and server selection's error."""

from pymongo.mongo_client import MongoClient

__all__ = ["MongoClient"]
