"""Files and text in and out: video files, prompt lists."""
