from odoo import fields, models


class LabOrder(models.Model):
    _name = "lab.order"
    _description = "An order written in the lab"
    _inherit = ["mail.thread"]

    name = fields.Char(required=True)
    origin = fields.Char()
