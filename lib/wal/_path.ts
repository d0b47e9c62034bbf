/** Joins a directory and a file name with one `/`. Names never come from clients unchecked. */
export function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}
