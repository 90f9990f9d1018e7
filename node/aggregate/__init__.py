"""Aggregate statistics: the typed query, its SQL execution, disclosure control, the budget
ledger and the regional merge.

``query`` validates a request against the data dictionary, ``execute`` runs it as
parameterised SQL on the node's store, ``disclosure.release`` applies the responder's
rules (suppression, rounding, noise), ``ledger`` keeps the privacy budget and the query
history that differencing protection needs, and ``merge`` combines members' released
tables into a regional one.
"""
