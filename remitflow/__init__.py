"""remitflow: streaming reconciliation of remittances, bank deposits and ERP postings."""

__version__ = "0.1.0"
