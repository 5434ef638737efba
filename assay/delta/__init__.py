"""Delta Lake through delta-rs: the control plane's view of tables (log, stats, commits).

The engines write data files; this package reads table logs and commits files others wrote,
each batch's commit carrying its application transaction. It knows no engine.
"""
