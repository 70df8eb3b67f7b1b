from . import lab_order
