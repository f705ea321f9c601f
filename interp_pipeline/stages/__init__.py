"""Built-in stages. Each module imports torch and friends inside its functions, so that
registering the stages (for validation and ``--help``) stays cheap."""
