# A custom addon as hosters have them: installed in the database, its code only in the
# VPS's sources (so the backup must replicate them to load the database).
{
    "name": "Lab custom",
    "version": "17.0.1.0.0",
    "summary": "Orders written by the odoo-standby lab's users",
    "depends": ["mail"],
    "data": ["security/ir.model.access.csv"],
    "license": "LGPL-3",
    "installable": True,
}
