"""``manage.py asm_maintenance``."""
