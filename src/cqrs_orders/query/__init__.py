"""The read side: the SQL views (``views``) and the read-model query API (``api``)."""
