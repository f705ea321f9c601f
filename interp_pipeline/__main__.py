from interp_pipeline.cli import main

if __name__ == "__main__":
    main()
