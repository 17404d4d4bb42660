"""The shop's own data: customers and their verified channel identities, orders,
refunds, tickets, verification codes and the audit trail (SQLAlchemy 1.4).

SQLite under var/ by default, PostgreSQL with DATABASE_URL; the schema is
created and upgraded by Alembic (`bot.shop.database.upgrade`), which `bot run`
applies before it starts anything. The custom actions read and write it.
"""
