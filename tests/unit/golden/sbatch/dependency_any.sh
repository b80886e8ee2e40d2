#!/bin/bash
#SBATCH -d afterok:111?afternotok:111
echo either way
