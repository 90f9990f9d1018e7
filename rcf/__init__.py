"""rcf-exchange: member states answer each other's questions without handing over data.

The one import namespace of the distribution. Its subpackages are the project's
top-level folders (``rcf.node`` is ``node/``, ``rcf.hub`` is ``hub/``, …); in a source
checkout this folder holds links to them, in the wheel their contents.
"""
