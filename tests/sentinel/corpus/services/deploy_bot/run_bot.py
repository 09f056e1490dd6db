"""The bot's entry point, as its shell loop runs it: ``python run_bot.py PARAMS``."""

from bot.main import main

main()
