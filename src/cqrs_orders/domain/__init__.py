"""The command side's rules, in pure Python: commands, the Order and Customer aggregates, their decisions.

Nothing here touches Spark, Azure or a database; the application layer feeds state in and stores what comes
out.
"""
