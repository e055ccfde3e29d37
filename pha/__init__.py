"""pha: PostgreSQL high availability on Pacemaker/Corosync.

This module stays tiny: every OCF agent imports it on its hot path.
"""
__version__ = "0.1.0"
